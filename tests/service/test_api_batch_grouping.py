"""Length grouping of an encoder micro-batch: every text once, padding bounded, similar lengths together."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.searcher import MAX_PADDING_FRACTION, length_groups


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), max_size=64))
def test_groups_cover_every_row_once_with_bounded_padding(lengths):
    lengths = np.asarray(lengths, dtype=np.int64)
    groups = length_groups(lengths)
    rows = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for group in groups:
        group_lengths = lengths[group]
        padded = len(group) * group_lengths.max()
        assert len(group) == 1 or padded <= (1 + MAX_PADDING_FRACTION) * group_lengths.sum()


def test_equal_lengths_stay_one_batch_and_outliers_go_alone():
    assert [g.tolist() for g in length_groups(np.array([9, 9, 9, 9]))] == [[0, 1, 2, 3]]
    groups = [sorted(g.tolist()) for g in length_groups(np.array([10, 64, 11, 12]))]
    assert groups == [[0, 2, 3], [1]]
