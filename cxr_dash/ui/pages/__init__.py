"""One module per page of the dashboard, each with ``render(ctx)``
(:class:`cxr_dash.ui.context.Context`).

Image pages: ``overview``, ``compare``, ``explain``, ``position``, ``downloads``.
Model pages (their context has no image): ``playback``, ``search``,
``dataset_evaluation``, ``model_card``.
"""
