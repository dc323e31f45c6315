import ample_batch


def test_all_is_sorted_and_complete() -> None:
    assert ample_batch.__all__ == sorted(ample_batch.__all__)
    public = {name for name in vars(ample_batch) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(ample_batch, name)).__name__ == "module"}
    assert set(ample_batch.__all__) == public - modules
    for name in ample_batch.__all__:
        assert getattr(ample_batch, name).__module__.startswith("ample_batch")
