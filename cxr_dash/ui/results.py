"""Explanations and occlusion maps kept for the session: shown again on the Explain
page, offered as files on Downloads.

A result is kept under a :class:`ResultKey`, which says which model set and image it
belongs to and what it was computed with. The result itself
(:class:`cxr_dash.explain.Explanation` or :class:`cxr_dash.occlusion.OcclusionResult`)
carries what Downloads needs: its region, its heatmap over the image (``at_size``)
and the name its file goes by (``download_name``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Union

import streamlit as st

from cxr_dash.explain import Explanation
from cxr_dash.faithfulness import Faithfulness
from cxr_dash.occlusion import OcclusionResult

from . import state

Result = Union[Explanation, OcclusionResult]
LIMIT = 40          # results kept per session; the oldest go first


@dataclass(frozen=True)
class ResultKey:
    model_key: str
    image_key: str
    kind: str             # "explanation" or "occlusion"
    region: str
    settings: tuple       # everything else the result depends on (method, layer, threshold, ...)

    @property
    def token(self) -> str:
        """A short stable id: the result's cache key and its download button's key."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:16]


def _store() -> dict[ResultKey, Result]:
    return st.session_state.setdefault("explanations", {})


def get(key: ResultKey) -> Result | None:
    return _store().get(key)


def keep(key: ResultKey, result: Result) -> None:
    state.remember(_store(), key, result, LIMIT)


def of_image(model_key: str, image_key: str) -> list[tuple[ResultKey, Result]]:
    """The results of one model set on one image, oldest first."""
    return [(k, r) for k, r in _store().items() if (k.model_key, k.image_key) == (model_key, image_key)]


def faithfulness(key: ResultKey, compute: Callable[[], Faithfulness]) -> Faithfulness:
    """The deletion test of a kept result (:mod:`cxr_dash.faithfulness`), computed once."""
    store = st.session_state.setdefault("faithfulness", {})
    if key not in store:
        state.remember(store, key, compute(), LIMIT)
    return store[key]


def faithfulness_of(key: ResultKey) -> Faithfulness | None:
    return st.session_state.get("faithfulness", {}).get(key)
