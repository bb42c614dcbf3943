"""The tests that use the demo pipeline run share one pytest-xdist worker (conftest.py), so it runs once.

Runs pytest with two workers on a few generated tests that ask for a stand-in
`demo_pipeline` (its worker's process id), grouped by the repository's own hook.
"""
import os
import subprocess
import sys

from tests.tfx_helpers import REPO

FILES = 8  # enough for xdist's load scheduling to use both workers

CONFTEST = f'''
import importlib.util, os, pytest
spec = importlib.util.spec_from_file_location("repo_conftest", {str(REPO / "conftest.py")!r})
repo_conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(repo_conftest)
pytest_collection_modifyitems = repo_conftest.pytest_collection_modifyitems

@pytest.fixture(scope="session")
def demo_pipeline():
    return os.getpid()
'''

TEST = '''
import os, time
def test_uses_the_run(demo_pipeline):
    time.sleep(0.3)
    open(os.path.join(os.path.dirname(__file__), "worker_" + __name__), "w").write(str(demo_pipeline))
def test_other():
    time.sleep(0.3)
'''


def test_the_demo_pipeline_tests_run_on_one_worker(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for i in range(FILES):
        (tmp_path / f"test_{i}.py").write_text(TEST)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers = {p.read_text() for p in tmp_path.glob("worker_*")}
    assert len(list(tmp_path.glob("worker_*"))) == FILES
    assert len(workers) == 1, f"the demo pipeline's tests ran on {len(workers)} workers"
