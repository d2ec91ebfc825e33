"""The tutorial (client/python/examples/tutorial.py), written as a scikit-learn user writes it,
run against a local cluster, prints what the same script prints with scikit-learn's imports."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.join(HERE, "..", "examples", "tutorial.py")
OURS = "from knncluster import GridSearchCV, KNeighborsClassifier, train_test_split\n"
THEIRS = ("from sklearn.model_selection import GridSearchCV, train_test_split\n"
          "from sklearn.neighbors import KNeighborsClassifier\n")


def run(path, env):
    return subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_the_tutorial_prints_sklearns_numbers(local_cluster, tmp_path):
    with open(TUTORIAL) as f:
        source = f.read()
    assert source.count(OURS) == 1
    sk_source = source.replace(OURS, THEIRS)
    # Nothing but the imports differs.
    changed = set(source.splitlines()) ^ set(sk_source.splitlines())
    assert all(line.startswith("from ") and " import " in line for line in changed), changed
    sk_path = tmp_path / "tutorial_sklearn.py"
    sk_path.write_text(sk_source)

    env = {k: v for k, v in os.environ.items() if not k.startswith("KNNCLUSTER_")}
    cluster_env = dict(env, KNNCLUSTER_ADDRESS=local_cluster[0].coordinator)
    # scikit-learn's grid searches take a while: both scripts run at once.
    procs = [run(TUTORIAL, cluster_env), run(str(sk_path), env)]
    (ours, our_err), (theirs, their_err) = [p.communicate(timeout=600) for p in procs]
    assert procs[0].returncode == 0, our_err
    assert procs[1].returncode == 0, their_err
    print(ours)
    assert ours == theirs
    for figure in ("test accuracy: 0.9694444444444444",
                   "best_score_: 0.9671711544413494",
                   "best_params_: {'n_neighbors': 2, 'p': 2}",
                   "best_estimator_ test accuracy: 0.9833333333333333",
                   "reloaded model predicts the same: True"):
        assert figure in ours


def test_the_tutorial_needs_only_the_environments_address(tmp_path):
    # Without KNNCLUSTER_ADDRESS it stops at the first fit and says what to set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNNCLUSTER_")}
    p = subprocess.run([sys.executable, TUTORIAL], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode != 0
    assert "KNNCLUSTER_ADDRESS" in p.stderr.splitlines()[-1]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
