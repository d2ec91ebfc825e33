"""knncluster: scikit-learn's k-nearest-neighbour estimators on a knncluster cluster.

Move scikit-learn code over by changing its imports::

    from knncluster import KNeighborsClassifier, GridSearchCV, train_test_split

The cluster is ``knncluster.Cluster("HOST:PORT")`` passed as an estimator's ``cluster``
parameter, made current with ``with Cluster(...):`` or ``set_default_cluster``, or taken from
KNNCLUSTER_ADDRESS (with KNNCLUSTER_TOKEN and KNNCLUSTER_TLS).
"""
from ._base import clone
from ._cluster import Cluster, get_default_cluster, set_default_cluster
from .exceptions import (ClusterError, ClusterTimeoutError, ClusterUnavailableError,
                         InvalidArgumentError, ModelNotFoundError, NotFittedError,
                         PartialAnswerWarning)
from .model_selection import (GridSearchCV, KFold, ParameterGrid, StratifiedKFold,
                              train_test_split)
from .neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

__version__ = "0.1.0"

__all__ = [
    "Cluster", "get_default_cluster", "set_default_cluster", "clone",
    "KNeighborsClassifier", "KNeighborsRegressor", "NearestNeighbors",
    "GridSearchCV", "KFold", "StratifiedKFold", "ParameterGrid", "train_test_split",
    "ClusterError", "ClusterTimeoutError", "ClusterUnavailableError", "InvalidArgumentError",
    "ModelNotFoundError", "NotFittedError", "PartialAnswerWarning",
]
