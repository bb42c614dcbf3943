"""The dashboard's open-set section: the risk-coverage curve and what a model without the outputs shows."""
import pytest

from gemstone import contract, open_set_report


def _photo(label, predicted, confidence, known=True):
    return {"label": label, "predicted": predicted, "confidence": confidence, "known": known,
            "novelty": {contract.NOT_A_GEMSTONE: 0.1, contract.UNFAMILIAR_VARIETY: 0.1}}


def test_risk_coverage_accepts_confident_known_photos_and_its_accuracy_rises_as_fewer_are_accepted():
    photos = ([_photo("Ruby", "Ruby", 0.95)] * 6 + [_photo("Ruby", "Spinel", 0.55)] * 2
              + [_photo("Ruby", "Ruby", 0.9, known=False)] * 2)
    curve = open_set_report.risk_coverage(photos, review_threshold=0.6)
    # At 0.6: the six confident right answers; the two unknown ones go to review however confident.
    assert curve["at_review_threshold"] == {"coverage": 0.6, "accuracy": 1.0}
    assert curve["coverage"][0] == pytest.approx(0.8) and curve["accuracy"][0] == pytest.approx(0.75)
    assert curve["coverage"] == sorted(curve["coverage"], reverse=True)
    assert curve["accuracy_of_all"] == pytest.approx(0.8)
    assert curve["accuracy"][-1] is None  # nobody reaches 0.99


def test_a_model_without_open_set_outputs_gets_a_sentence_not_a_section():
    assert open_set_report.collect({"clean": {}}, [], 0.6) is None
    assert "exported before the open-set outputs" in open_set_report.section_html(None)


def test_the_section_names_the_non_gem_photos_it_missed():
    robustness = {"open_set": {
        "known_photos": 10, "flagged": 0.1, "max_flagged": 0.1,
        "flagged_by_reason": {contract.NOT_A_GEMSTONE: 0.0, contract.UNFAMILIAR_VARIETY: 0.1},
        "non_gem_photos": {"photos": 2, "flagged": 0.5, "not_a_gemstone": 0.5, "answers": [
            {"name": "chelsea.png", "known": False, "novelty": {contract.NOT_A_GEMSTONE: 40.0}},
            {"name": "coins.png", "known": True, "novelty": {contract.NOT_A_GEMSTONE: 0.5}}]}}}
    section = open_set_report.collect(robustness, [_photo("Ruby", "Ruby", 0.9)], 0.6)
    assert section["non_gem_missed"] == ["coins.png"] and section["non_gem_not_a_gemstone"] == [40.0, 0.5]
    page = open_set_report.section_html(section)
    assert "Not flagged: coins.png" in page and "10.0% of the 10 test photos" in page
    assert page.count("<img") == 2  # the histogram and the risk-coverage curve
