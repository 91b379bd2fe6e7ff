"""The job files several tests share, in one place (a test's own variations stay in it)."""

#: the smallest real job: iris, one model type, 2 candidates × 3 folds (a second or two)
IRIS_KNN = """
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3] }
"""

#: digits, scaled, three model types (4 + 36 + 2 candidates × 4 folds): long enough to
#: pause, kill and resume in the middle
DIGITS_THREE_TYPES = """
[data]
source = "sklearn:digits"

[search]
cv = 4

[[preprocess]]
name = "scale"
estimator = "StandardScaler"

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3, 5, 7] }

[models.svc]
estimator = "SVC"
grid = { C = { logspace = [-2, 2, 9] }, gamma = { logspace = [-4, -2, 4] } }

[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 500 }
grid = { C = [0.1, 1.0] }
"""

#: iris, k-NN over three neighbour counts (3 × 3 folds)
IRIS_KNN3 = """
[data]
source = "sklearn:iris"
[search]
cv = 3
[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = [1, 3, 5] }
"""

#: IRIS_KNN3 plus a tree and a logistic regression: three types, 8 candidates × 3 folds
IRIS_THREE_TYPES = IRIS_KNN3 + """
[models.tree]
estimator = "DecisionTreeClassifier"
params = { random_state = 0 }
grid = { max_depth = [1, 2, 3] }
[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 500 }
grid = { C = [0.1, 1.0] }
"""

#: DIGITS_THREE_TYPES with 11 k-NN and 45 SVC candidates (× 4 folds): the fault tests' job
DIGITS_SLOW = DIGITS_THREE_TYPES.replace(
    "n_neighbors = [1, 3, 5, 7]", "n_neighbors = { range = [1, 12] }").replace(
    "logspace = [-4, -2, 4]", "logspace = [-4, -2, 5]").replace(
    'grid = { C = [0.1, 1.0] }', 'grid = { C = [0.01, 0.1, 1.0] }').replace(
    "max_iter = 500", "max_iter = 300")


def iris_many_cheap(neighbors: int, depths: int, c_values: int, decades: int,
                    wide: bool = False) -> str:
    """iris, 4 folds: k-NN over 1..``neighbors``, a tree over depths 1..``depths`` and both
    criteria, a logistic regression over ``c_values`` C values from 10**-decades to
    10**decades: many fits of a millisecond,
    for the jobs the tests pace (tests/faultinject) to last as long as a test needs, with a
    cheap GridSearchCV reference. ``wide`` doubles the k-NN grid (weights) and the tree's
    (splitter)."""
    weights = ', weights = ["uniform", "distance"]' if wide else ""
    splitter = ', splitter = ["best", "random"]' if wide else ""
    return f"""
[data]
source = "sklearn:iris"
[search]
cv = 4
[models.knn]
estimator = "KNeighborsClassifier"
grid = {{ n_neighbors = {{ range = [1, {neighbors + 1}] }}{weights} }}
[models.tree]
estimator = "DecisionTreeClassifier"
params = {{ random_state = 0 }}
grid = {{ max_depth = {{ range = [1, {depths + 1}] }}, criterion = ["gini", "entropy"]{splitter} }}
[models.lr]
estimator = "LogisticRegression"
params = {{ max_iter = 500 }}
grid = {{ C = {{ logspace = [-{decades}, {decades}, {c_values}] }} }}
"""
