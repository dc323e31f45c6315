import ample_batch


def test_all_is_sorted_and_complete() -> None:
    assert ample_batch.__all__ == sorted(ample_batch.__all__)
    assert dir(ample_batch) == ample_batch.__all__
    for name in ample_batch.__all__:
        assert getattr(ample_batch, name).__module__.startswith("ample_batch")


def test_unknown_names_are_attribute_errors() -> None:
    try:
        ample_batch.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
