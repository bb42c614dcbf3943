"""The model card's words: what a gemmologist reads first is accuracy on how many test photos."""
from components.model_card import component
from gemstone import contract


def test_metrics_are_said_in_words_with_the_photo_count():
    lines = component.metric_lines({contract.ACCURACY: 0.6622, contract.TOP_K_ACCURACY: 0.8843,
                                    contract.EXAMPLE_COUNT: 527.0, "loss": 1.25})
    assert lines == [
        "- Accuracy on 527 test photos: 66.2 % named correctly (0.662)",
        "- Top-3 accuracy: the right variety among the first 3 named for 88.4 % of them (0.884)",
        "- loss: 1.25",
    ]


def test_the_card_carries_them():
    card = {"model": "gem88", "version": "1", "created": "2026-11-25", "intended_use": "x", "limits": "y",
            "verdict": {"blessed": True, "pushed": True, "pushed_to": "/s/gem88/1", "reasons": []},
            "data": {"root": "/d", "counts": {"files": 3}, "classes": ["Ruby"]},
            "metrics": {"overall": {contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 4.0},
                        "weakest_classes": [{"label": "Ruby", contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 4}]},
            "calibration": {}, "backbone": {}, "edge_models": {}, "lineage": {}}
    text = component.to_markdown(card)
    assert "- Accuracy on 4 test photos: 50.0 % named correctly (0.500)" in text
    assert "sparse_categorical_accuracy" not in text


def test_the_card_says_when_the_head_learnt_from_the_eval_photos_after_calibration():
    card = {"model": "gem88", "version": "1", "created": "2026-11-27", "intended_use": "x", "limits": "y",
            "verdict": {"blessed": True, "pushed": True, "pushed_to": "/s/gem88/1", "reasons": []},
            "data": {"root": "/d", "counts": {"files": 3}, "classes": ["Ruby"]},
            "metrics": {"overall": {contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 4.0}, "weakest_classes": []},
            "calibration": {}, "edge_models": {}, "lineage": {},
            "backbone": {"backbone": "efficientnet_lite2", "weights": "/w.h5", "fine_tuning_kept": False}}
    assert "trained again on the training and eval photos" not in component.to_markdown(card)
    card["backbone"]["refit_with_eval"] = True
    assert "trained again on the training and eval photos" in component.to_markdown(card)


def test_the_weakest_classes_are_the_least_accurate_and_never_a_perfect_one():
    per_class = {"Ruby": {contract.ACCURACY: 1.0, contract.EXAMPLE_COUNT: 4.0},
                 "Spinel": {contract.ACCURACY: 0.25, contract.EXAMPLE_COUNT: 4.0},
                 "Garnet": {contract.ACCURACY: 0.75, contract.EXAMPLE_COUNT: 4.0},
                 "Topaz": {contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 2.0}}
    assert [c["label"] for c in component.weakest_classes(per_class)] == ["Spinel", "Topaz", "Garnet"]
    assert [c["label"] for c in component.weakest_classes(per_class, shown=2)] == ["Spinel", "Topaz"]
    assert component.weakest_classes({"Ruby": per_class["Ruby"]}) == []


def test_the_card_lists_the_classes_it_was_trained_on():
    card = {"model": "gem88", "version": "1", "created": "2026-12-05", "intended_use": "x",
            "limits": component.LIMITS, "verdict": {"blessed": True, "pushed": True, "pushed_to": "/s/gem88/1",
                                                    "reasons": []},
            "data": {"root": "/d", "counts": {"files": 9}, "classes": ["Garnet", "Ruby", "Spinel"]},
            "metrics": {"overall": {contract.ACCURACY: 1.0, contract.EXAMPLE_COUNT: 3.0}, "weakest_classes": []},
            "calibration": {}, "backbone": {}, "edge_models": {}, "lineage": {}}
    text = component.to_markdown(card)
    assert "Trained only on the classes listed below" in text
    assert "3 classes:\n\nGarnet, Ruby, Spinel." in text.split("## Data")[1]
    assert "No class had a test photo named wrong." in text and "Weakest classes:" not in text


def _blessed_card(verdict, metrics):
    return {"model": None, "version": None, "created": "2026-12-05", "intended_use": "x", "limits": "y",
            "verdict": {"blessed": True, "pushed": False, "pushed_to": None, "reasons": [], **verdict},
            "data": {"root": "/d", "counts": {"files": 3}, "classes": ["Ruby"]},
            "metrics": {"overall": {contract.ACCURACY: 0.75, contract.EXAMPLE_COUNT: 4.0}, "weakest_classes": [],
                        **metrics},
            "calibration": {}, "backbone": {}, "edge_models": {}, "lineage": {}}


def test_a_model_the_newest_version_holds_already_is_said_to_be_served_by_it():
    text = component.to_markdown(_blessed_card({"already_serving": "/s/gem88/7"}, {}))
    assert "not pushed again: `/s/gem88/7` already holds this model." in text
    assert "not pushed again" not in component.to_markdown(_blessed_card({"already_serving": None}, {}))


def test_the_card_gives_the_accuracy_of_the_model_it_was_compared_with_only_when_it_was():
    compared = component.to_markdown(_blessed_card({}, {"baseline": {contract.ACCURACY: 0.5}}))
    assert "- The latest blessed model, which it was compared with: accuracy 0.500" in compared
    assert "compared with" not in component.to_markdown(_blessed_card({}, {}))


def test_the_card_says_how_the_model_maps_where_it_looked_when_the_trainer_recorded_it():
    card = _blessed_card({}, {})
    card["backbone"] = {"backbone": "efficientnet_lite2", "weights": "/w.h5"}
    assert "## Explanations" not in component.to_markdown(card)  # a model trained before it was recorded
    card["backbone"]["explanations"] = {"method": "smooth_grad", "summary": "SmoothGrad: the gradient"}
    text = component.to_markdown(card)
    assert "## Explanations\n\nWhere the model looked" in text and "SmoothGrad: the gradient (`smooth_grad`)." in text


def test_the_card_names_the_tuners_values_when_the_model_was_trained_with_them():
    card = _blessed_card({}, {})
    card["backbone"] = {"backbone": "efficientnet_lite2", "weights": "/w.h5"}
    assert "Tuner" not in component.to_markdown(card)
    card["backbone"]["tuner_values"] = {"learning_rate": 0.002, "views": 1}
    assert "Trained with the Tuner's best values" in component.to_markdown(card)
    assert "learning_rate 0.002, views 1." in component.to_markdown(card)
