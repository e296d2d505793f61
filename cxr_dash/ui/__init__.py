"""The Streamlit dashboard. Layout only: every number comes from cxr_dash.

``context`` (what every page is given), ``sidebar`` (input, corrections,
settings), ``pages/`` (one module per page, ``render(ctx)``), ``widgets``
(pieces several pages draw), ``results`` (explanations kept for the session),
``state`` (cached models, images and results).
"""
