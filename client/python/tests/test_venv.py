"""The package installs into a virtual environment that sees Debian's grpcio, protobuf and numpy
(python3 -m venv --system-site-packages), from the build tree, without network, and works there
against a local cluster."""
import os
import shutil
import subprocess

from conftest import PACKAGE_DIR

CHECK = """
import os, sys
import knncluster
assert knncluster.__file__.startswith(sys.prefix), knncluster.__file__
import grpc, google.protobuf, numpy
c = knncluster.Cluster(os.environ["ADDRESS"])
clf = knncluster.KNeighborsClassifier(n_neighbors=1, cluster=c).fit([[0.0], [1.0]], ["a", "b"])
print(knncluster.__version__, clf.predict([[0.2], [0.9]]).tolist())
"""


def test_pip_installs_into_a_venv_without_network(local_cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(PACKAGE_DIR, name), src / name)
    shutil.copytree(os.path.join(PACKAGE_DIR, "knncluster"), src / "knncluster",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, env=env, timeout=120)
    python = str(venv / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                          "--quiet", str(src)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    run = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path,
                         env=dict(env, ADDRESS=local_cluster[0].coordinator), timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "0.1.0 ['a', 'b']\n"
    # pip knows it (and could uninstall it).
    show = subprocess.run([python, "-m", "pip", "show", "knncluster"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert "Name: knncluster" in show.stdout
