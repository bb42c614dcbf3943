"""RunInference's cached model is let go of through Beam's public API."""
import gc
import weakref

from gemstone import inference


def test_release_lets_go_of_what_beams_shared_cache_keeps_alive():
    """Through Beam's public handle, as RunInference acquires its model. Fails when Beam stops keeping the
    last object alive (then release_shared_models is not needed) or keeps it some other way."""
    from apache_beam.utils import shared

    class Model:
        pass

    model = shared.Shared().acquire(Model)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is not None  # Beam keeps it, with no reference left but its own
    inference.release_shared_models()
    assert alive() is None
