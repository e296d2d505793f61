"""Streamlit panels of the dashboard. Layout only: every number comes from cxr_dash."""
