"""Graph metadata survives the round trip through ONNX `metadata_props` strings."""

from ood_perception.contract import CITYSCAPES_CLASSES, ModelInfo


def test_metadata_round_trip():
    info = ModelInfo(
        input_height=518, input_width=1036, model_name="uem-dinov2-b", score_name="llr",
        class_names=CITYSCAPES_CLASSES, tiling={"mode": "sliding", "window": [518, 1036]},
        score_range=(-12.5, 8.0), producer="ood_perception 0.1.0",
    )
    props = info.to_metadata()
    assert all(isinstance(value, str) for value in props.values())
    assert ModelInfo.from_metadata(props, (518, 1036)) == info


def test_missing_metadata_falls_back_to_the_graph_input_size():
    info = ModelInfo.from_metadata({}, (64, 96))
    assert info.input_size == (64, 96)
    assert info.class_names == () and info.score_range is None


def test_graph_input_shape_wins_over_metadata():
    props = ModelInfo(input_height=10, input_width=20).to_metadata()
    assert ModelInfo.from_metadata(props, (30, 40)).input_size == (30, 40)
