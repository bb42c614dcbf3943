"""The gallery's choice: each variety's most typical photos, never another variety's."""
import numpy as np

from modules import gallery


def test_the_photos_nearest_each_varietys_mean_are_chosen_at_most_three():
    rng = np.random.default_rng(0)
    centres = np.eye(2, 4) * 5
    labels = np.repeat([0, 1], 6)
    features = centres[labels] + rng.normal(0, 0.2, (12, 4))
    features[0] = [2, 0, 0, 5]  # an outlier of variety 0: never typical
    chosen = gallery.choose(features, labels)
    assert set(chosen) == {0, 1} and all(len(v) == 3 for v in chosen.values())
    assert all(labels[i] == variety for variety, indices in chosen.items() for i in indices)
    assert 0 not in chosen[0]
    one = gallery.choose(features[:1], labels[:1])
    assert one == {0: [0]}  # a variety with one photo shows that one
