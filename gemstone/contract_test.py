"""The prediction record: one parser of `serving_default`'s outputs for every reader."""
import numpy as np
import pytest

from gemstone import contract


def _outputs(batch=2):
    """What `serving_default` returns for a batch, as numpy (strings as bytes, as TensorFlow gives them)."""
    return {
        "label": np.array([b"Ruby", b"Emerald"]),
        "confidence": np.array([0.91, 0.42], np.float32),
        "top_k_labels": np.array([[b"Ruby", b"Spinel", b"Garnet"], [b"Emerald", b"Tsavorite", b"Peridot"]]),
        "top_k_scores": np.array([[0.91, 0.05, 0.02], [0.42, 0.3, 0.1]], np.float32),
        "family": np.array([b"Corundum", b"Beryl"]),
        "family_confidence": np.array([0.93, 0.5], np.float32),
        "needs_review": np.array([False, True]),
        "probabilities": np.full((batch, 4), 0.25, np.float32),
        "classes": np.array([[b"Emerald", b"Garnet", b"Ruby", b"Spinel"]] * batch),
    }


def test_records_are_plain_json_ready_values_one_per_photo():
    records = contract.prediction_records(_outputs())
    assert [r["label"] for r in records] == ["Ruby", "Emerald"]
    assert records[1]["top_k_labels"] == ["Emerald", "Tsavorite", "Peridot"]
    assert records[0]["needs_review"] is False and records[1]["needs_review"] is True
    assert records[0]["classes"] == ["Emerald", "Garnet", "Ruby", "Spinel"] and len(records[0]["probabilities"]) == 4
    assert set(records[0]) == set(contract.PREDICTION_OUTPUTS)


def test_compact_drops_the_per_class_vectors_and_pairs_the_top_k():
    record = contract.compact(contract.prediction_records(_outputs())[1])
    assert record == {"label": "Emerald", "confidence": 0.42,
                      "top_k": [{"label": "Emerald", "score": 0.42}, {"label": "Tsavorite", "score": 0.3},
                                {"label": "Peridot", "score": 0.1}],
                      "family": "Beryl", "family_confidence": 0.5, "needs_review": True}


def test_a_model_without_the_contract_outputs_is_named_as_such():
    outputs = _outputs()
    del outputs["family_confidence"]
    with pytest.raises(ValueError, match="family_confidence"):
        contract.prediction_records(outputs)


def _with_open_set():
    return {**_outputs(), "known": np.array([True, False]), "novelty": np.array([[0.1, 0.2], [0.3, 1.7]], np.float32),
            "review_reason": np.array([b"", b"unfamiliar_variety"])}


def test_records_carry_the_open_set_verdict_and_no_reason_is_null():
    first, second = contract.prediction_records(_with_open_set())
    assert first["review_reason"] is None and first["known"] is True and contract.has_novelty(first)
    assert second["review_reason"] == contract.UNFAMILIAR_VARIETY and second["novelty"] == pytest.approx([0.3, 1.7])
    compact = contract.compact(second)
    assert compact["novelty"] == pytest.approx({contract.NOT_A_GEMSTONE: 0.3, contract.UNFAMILIAR_VARIETY: 1.7})
    assert compact["known"] is False and compact["review_reason"] == contract.UNFAMILIAR_VARIETY
    # A model exported before the open-set outputs: the same records, without them.
    assert not contract.has_novelty(contract.prediction_records(_outputs())[0])


def test_the_verdict_says_first_what_the_photo_is_not():
    base = {"label": "Citrine", "needs_review": True}
    assert contract.verdict({**base, "review_reason": contract.NOT_A_GEMSTONE}) == \
        "not a gemstone photo (closest variety: Citrine)"
    assert contract.verdict({**base, "review_reason": contract.UNFAMILIAR_VARIETY}) == \
        "not a variety this model knows (closest: Citrine)"
    assert contract.verdict({**base, "review_reason": contract.LOW_CONFIDENCE}).endswith("needs expert review")
    assert contract.verdict({"label": "Citrine", "needs_review": False, "review_reason": None}) == "Citrine"
