"""The scikit-learn k-nearest-neighbours tutorial on the digits, run on a knncluster cluster.

It is written exactly as a scikit-learn user writes it; only the imports of the estimators and
of the model-selection tools differ (scikit-learn's are in the comment below). The cluster's
address comes from the environment: KNNCLUSTER_ADDRESS=HOST:PORT.

    KNNCLUSTER_ADDRESS=127.0.0.1:50051 python3 tutorial.py
"""
import os
import pickle
import tempfile

from sklearn.datasets import load_digits

# from sklearn.model_selection import GridSearchCV, train_test_split
# from sklearn.neighbors import KNeighborsClassifier
from knncluster import GridSearchCV, KNeighborsClassifier, train_test_split

digits = load_digits()
X, y = digits.data, digits.target
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=1337)
print("train rows:", len(X_train), "test rows:", len(X_test))

# A classifier on the training split, scored on the test split.
knn = KNeighborsClassifier(n_neighbors=20, algorithm="kd_tree", p=2)
knn.fit(X_train, y_train)
print("test accuracy:", knn.score(X_test, y_test))

# Saved and loaded again, it predicts the same.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "knn.pkl")
    with open(path, "wb") as f:
        pickle.dump(knn, f)
    with open(path, "rb") as f:
        reloaded = pickle.load(f)
print("reloaded model predicts the same:", (reloaded.predict(X_test) == knn.predict(X_test)).all())

# A grid search with 5-fold cross-validation over every digit.
param_grid = {"n_neighbors": list(range(2, 20, 2)), "p": [1, 2, 3]}
grid = GridSearchCV(KNeighborsClassifier(algorithm="kd_tree"), param_grid, cv=5)
grid.fit(X, y)
print("best_score_:", grid.best_score_)
print("best_params_:", grid.best_params_)
# Flattering: the refit saw the test rows too (search on X_train alone for an honest figure).
print("best_estimator_ test accuracy:", grid.best_estimator_.score(X_test, y_test))

