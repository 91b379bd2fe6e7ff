"""Which parameter values a job file may give an estimator: the audit, as data.

The allow-list (:mod:`searchd.worker.estimators`) says which estimators a job may name;
this module says what a job may make them *do*. A job file can only write strings,
numbers, booleans, None, lists and estimators (``{estimator = ..., params = ...}``), so
the audit asks of every parameter of every public scikit-learn estimator
(``sklearn.utils.all_estimators()``, meta-estimators and pipeline pieces included) what
such a value makes it do, reading scikit-learn's source and its ``_parameter_constraints``
(which scikit-learn checks at the start of ``fit``):

- most parameters take numbers, flags, one of a fixed set of strings, data or estimators
  (:data:`SAFE`, grouped by why they are safe);
- a few name a folder or a file, are evaluated, looked up as attributes, formatted, or
  passed through to functions: :data:`RULES` refuses them or allows only safe values.

A value a job file gives is checked here by its parameter's name, whatever estimator owns
it and however deep it sits (``params``, grid values, ``[[preprocess]]`` steps,
estimator-valued parameters); a parameter at its default is never refused. On a
scikit-learn estimator, a parameter this audit does not know (a newer scikit-learn) is
refused unless left at its default. ``tests/test_param_policy.py`` repeats the audit's
enumeration against the installed scikit-learn, so an upgrade that adds a parameter, or
lets a safe one take free text, fails the tests instead of opening a hole.

Resource sizes (``n_jobs``, ``n_estimators``, ``cache_size``, ...) are not this module's
concern: they cost CPU and memory, not code or files. This module imports nothing from
scikit-learn, so the supervisor could apply it by name too.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: the scikit-learn version this audit read
AUDITED_SKLEARN = "1.9.1"


@dataclass(frozen=True)
class Rule:
    """A parameter a job file may not set freely."""

    #: why: what scikit-learn would do with a value (one line, shown in the error)
    reason: str
    #: what a job may give instead, for the error message ("nothing" = leave the default)
    allows: str = "nothing"
    #: the values a job may give, beyond the estimator's default; None = none at all
    test: Callable[[Any], bool] | None = None


def _only(*values: Any) -> Callable[[Any], bool]:
    return lambda v: any(type(v) is type(a) and v == a for a in values)


def _pre_dispatch(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 1
    return isinstance(v, str) and re.fullmatch(r"all|(\d{1,3}(\.\d{1,3})?\s*\*\s*)?n_jobs", v) \
        is not None


def _attribute_path(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 100 and (
        v == "auto" or re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*", v)
        is not None)


FEATURE_FIELDS = frozenset({"transformer_name", "feature_name"})


def _names_format(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if not isinstance(v, str) or len(v) > 100:
        return False
    try:
        parts = list(string.Formatter().parse(v))
    except ValueError:
        return False
    return all(field is None or (field in FEATURE_FIELDS and not spec and conversion is None)
               for _, field, spec, conversion in parts)


def _regex(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, str) or len(v) > 100:
        return False
    try:
        re.compile(v)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


CHAIN_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _chain_method(v: Any) -> bool:
    if isinstance(v, str):
        return v in CHAIN_METHODS
    return isinstance(v, list) and bool(v) and all(
        isinstance(m, str) and m in CHAIN_METHODS for m in v)


CODECS = ("utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1", "cp1252", "utf-16",
          "utf-32")
DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64",
          "uint32", "uint16", "uint8", "bool")
_KEYWORDS = Rule("keyword arguments handed on to functions (metric='pyfunc' calls "
                 "metric_params['func']): not audited, and a job file cannot write a dict",
                 "only None", _only(None))

#: parameters refused, or allowed only with the values their test accepts
RULES: dict[str, Rule] = {
    "memory": Rule("a joblib cache folder: joblib.Memory writes into it and loads every "
                   "pickle it finds there, which runs code", "only None", _only(None)),
    "input": Rule("'filename' and 'file' make the vectorizer open every sample as a path",
                  "only 'content'", _only("content")),
    "encoding": Rule("a codec name is looked up through the `encodings` package, which "
                     "imports the module it names", f"one of {', '.join(CODECS)}",
                     _only(*CODECS)),
    "dtype": Rule("numpy parses any dtype string (sub-arrays such as '(1000000000,)f8' "
                  "allocate without bound)", f"None or one of {', '.join(DTYPES)}",
                  _only(None, *DTYPES)),
    "token_pattern": Rule("a regular expression compiled and run on every document",
                          "None or a pattern of at most 100 characters that compiles "
                          "(its running time is not bounded: ReDoS costs the job's own CPU)",
                          _regex),
    "pre_dispatch": Rule("joblib evaluates the string as an arithmetic expression",
                         "an integer, 'all', 'n_jobs' or '<k>*n_jobs'", _pre_dispatch),
    "importance_getter": Rule("resolved with operator.attrgetter on the fitted estimator",
                              "'auto' or a dotted path of public attribute names "
                              "('regressor_.coef_')", _attribute_path),
    "verbose_feature_names_out": Rule(
        "a str.format template: fields can reach attributes ('{feature_name.__class__}') "
        "and pad without bound ('{feature_name:>999999999}')",
        "true, false or a template using only {transformer_name} and {feature_name}",
        _names_format),
    "chain_method": Rule("each name is looked up on the estimator and called; scikit-learn "
                         "checks the names only when one string is given",
                         f"one of {', '.join(CHAIN_METHODS)}, or a list of them",
                         _chain_method),
    "param_grid": Rule("a nested search sets parameters at fit time, out of this audit's "
                       "reach; give the grid to searchd instead"),
    "param_distributions": Rule("a nested search sets parameters at fit time, out of this "
                                "audit's reach; give the grid to searchd instead"),
    "metric_params": _KEYWORDS,
    "kernel_params": _KEYWORDS,
    "kw_args": _KEYWORDS,
    "inv_kw_args": _KEYWORDS,
    "fun_args": _KEYWORDS,
    "solver_options": _KEYWORDS,
}

#: safe parameter names, by why they are safe (the key says it)
SAFE: dict[str, frozenset[str]] = {
    # numbers and flags: scikit-learn refuses anything else before fit. n_jobs is a
    # resource question (the worker caps it), verbose only prints.
    "numbers and flags": frozenset({
        "C", "accept_sparse", "add_indicator", "allow_single_cluster", "alpha_1", "alpha_2",
        "alpha_W", "alpha_init", "alpha_per_target", "alternate_sign", "angle",
        "assume_centered", "atol", "average", "beta_1", "beta_2", "bin_seeding", "binarize",
        "binary", "block_size", "bootstrap", "bootstrap_features", "branching_factor",
        "breadth_first", "break_ties", "cache_size", "ccp_alpha", "check_inverse", "clip",
        "cluster_all", "cluster_selection_epsilon", "code_size", "coef0", "compute_distances",
        "compute_inverse_components", "compute_labels", "compute_score", "convergence_iter",
        "copy_X", "copy_X_train", "copy_x", "damping", "degrees_of_freedom_prior",
        "dense_output", "distance_threshold", "doc_topic_prior", "early_exaggeration",
        "encoded_missing_value", "enet_tol", "eps", "epsilon", "error_on_new", "eta0",
        "evaluate_every", "fit_intercept", "fit_inverse_transform", "fit_path", "fit_prior",
        "flatten_transform", "force_alpha", "forget_factor", "fresh_restarts",
        "fresh_restarts_max_iter", "hessian_tol", "ignore_implicit_zeros", "include_bias",
        "init_size", "interaction_only", "intercept_scaling", "jitter", "k_best",
        "keep_empty_features", "l2_regularization", "lambda_1", "lambda_2", "lambda_init",
        "leaf_size", "learning_decay", "learning_offset", "learning_rate_init", "lowercase",
        "max_bins", "max_categories", "max_cluster_size", "max_depth", "max_df",
        "max_doc_update_iter", "max_eps", "max_fun", "max_iter", "max_iter_predict",
        "max_leaf_nodes", "max_n_alphas", "max_no_improvement", "max_patches", "max_skips",
        "max_subpopulation", "max_trials", "mean_change_tol", "mean_precision_prior",
        "metric_mds", "min_bin_freq", "min_cluster_size", "min_df", "min_features_to_select",
        "min_frequency", "min_grad_norm", "min_impurity_decrease", "min_samples",
        "min_samples_leaf", "min_samples_split", "min_weight_fraction_leaf", "mini_batch",
        "modified_tol", "momentum", "n_best", "n_estimators", "n_features", "n_iter",
        "n_iter_no_change", "n_iter_without_progress", "n_jobs", "n_knots", "n_neighbors",
        "n_nonzero_coefs", "n_oversamples", "n_quantiles", "n_refinements",
        "n_restarts_optimizer", "n_subsamples", "n_svd_vecs", "n_targets", "neg_label",
        "nesterovs_momentum", "noise_variance", "norm_order", "normalize_y", "novelty", "nu",
        "p", "passthrough", "percentile", "perp_tol", "perplexity", "positive",
        "positive_code", "positive_dict", "power", "power_t", "predecessor_correction",
        "prefit", "quantile", "radius", "reassignment_ratio", "reg", "reg_covar", "reg_param",
        "remove_zero_eig", "residual_threshold", "return_train_score", "ridge_alpha", "rtol",
        "sample_interval", "sample_steps", "scale", "shrink_threshold", "shrinking",
        "skewedness", "smooth_idf", "sort", "sparse_output", "sparse_threshold", "split_sign",
        "standardize", "step", "stop_n_inliers", "stop_probability", "stop_score",
        "store_covariance", "store_cv_results", "store_precision", "sublinear_tf",
        "subsample", "support_fraction", "threshold_lambda", "tol", "topic_word_prior",
        "total_samples", "transform_alpha", "transform_max_iter",
        "transform_n_nonzero_coefs", "unit_variance", "unknown_value", "use_idf", "validate",
        "validation_fraction", "var_smoothing", "verbose", "verbose_interval", "warm_start",
        "weight_concentration_prior", "with_centering", "with_mean", "with_scaling",
        "with_std", "xi", "y_max", "y_min"}),
    # numbers or one of a fixed set of strings (scikit-learn's StrOptions), checked before
    # fit; each set was read: none names a file, a module, an attribute or a format
    "numbers or fixed choices": frozenset({
        "activation", "algorithm", "alpha_H", "assign_labels", "bandwidth", "batch_size",
        "beta_loss", "bisecting_strategy", "cluster_method", "cluster_selection_method",
        "compute_full_tree", "contamination", "copy", "covariance", "covariance_type",
        "decision_function_shape", "decode_error", "density", "direction", "dissimilarity",
        "dual", "early_stopping", "eigen_solver", "eigen_tol", "encode", "ensemble",
        "error_score", "extrapolation", "features", "fit_algorithm", "gamma", "gcv_mode",
        "handle_missing", "handle_unknown", "increasing", "init_params", "input_type",
        "iterated_power", "k", "learning_method", "learning_rate", "link", "linkage",
        "max_samples", "method", "mode", "multi_class", "n_components",
        "n_features_to_select", "n_init", "neighbors_algorithm", "norm", "normalized_stress",
        "out_of_bounds", "output_distribution", "param", "path_method", "penalty",
        "power_iteration_normalizer", "probability", "quantile_method", "random_state",
        "response_method", "rotation", "selection", "shrinkage", "shuffle", "smooth",
        "sparse", "splitter", "stack_method", "store_centers", "svd_method", "svd_solver",
        "target_type", "transform_algorithm", "use_legacy_attributes", "voting",
        "weight_concentration_prior_type", "whiten", "whiten_solver"}),
    # arrays, labels, column and feature names, word lists, CV splits: compared, indexed
    # or counted, never opened, imported or called
    "data": frozenset({
        "Cs", "U_init", "V_init", "alpha", "alphas", "categorical_features", "categories",
        "class_prior", "class_weight", "classes", "code_init", "covariance_prior", "cv",
        "degree", "dict_init", "dictionary", "drop", "feature_range", "hidden_layer_sizes",
        "interaction_cst", "knots", "l1_ratio", "l1_ratios", "mean_prior", "means_init",
        "min_categories", "missing_values", "monotonic_cst", "n_bins", "ngram_range",
        "noise_variance_init", "order", "patch_size", "precisions_init", "precompute",
        "preference", "priors", "quantile_range", "seeds", "stop_words", "thresholds",
        "transform_input", "transformer_weights", "vocabulary", "w_init", "weights_init"}),
    # a callable or an object, else one of fixed strings: a job file cannot write a
    # callable or such an object, and scikit-learn refuses any other string before fit
    "callables or fixed choices": frozenset({
        "affinity", "analyzer", "callback", "connectivity", "criterion",
        "feature_name_combiner", "feature_names_out", "fun", "func", "inverse_func",
        "is_data_valid", "is_model_valid", "kernel", "loss", "max_features", "optimizer",
        "oob_score", "pooling_func", "preprocessor", "score_func", "solver", "strategy",
        "strip_accents", "tokenizer", "weights"}),
    # estimators (or lists of named ones): each is built from the job file, and checked,
    # where it is written; 'drop' and 'passthrough' are fixed choices
    "estimators": frozenset({
        "covariance_estimator", "estimator", "estimators", "final_estimator", "init",
        "n_clusters", "regressor", "remainder", "steps", "transformer", "transformer_list",
        "transformers"}),
    # free text, read in scikit-learn's source: a class label or fill value (compared,
    # stored), a feature-name separator, 'mean'/'1.5*median' (parsed with float()), a
    # scorer or metric name (looked up in fixed tables: get_scorer, pairwise_distances)
    "free text, reviewed": frozenset({
        "constant", "fill_value", "metric", "outlier_label", "pos_label", "refit", "scoring",
        "separator", "threshold"}),
}

#: scikit-learn parameters without a constraint scikit-learn checks, each read and judged
#: safe (its class, its name); tests/test_param_policy.py fails on any other
UNVALIDATED: frozenset[tuple[str, str]] = frozenset({
    ("FeatureUnion", "n_jobs"), ("FeatureUnion", "transformer_list"),
    ("FeatureUnion", "transformer_weights"), ("FeatureUnion", "verbose"),
    ("FrozenEstimator", "estimator"), ("SimpleImputer", "fill_value")})

SAFE_NAMES: frozenset[str] = frozenset().union(*SAFE.values())


def refusal(name: str, value: Any, audited: bool) -> str | None:
    """Why a job file may not give ``value`` to a parameter ``name``; None if it may.

    ``audited``: the owner is a scikit-learn estimator, so a name this audit does not
    know is refused (an estimator from the daemon's ``allow_modules`` is the operator's
    choice: its unknown names pass, the known ones follow their rule). The caller lets a
    value equal to the estimator's default through before asking.
    """
    rule = RULES.get(name)
    if rule is not None:
        if rule.test is not None and rule.test(value):
            return None
        return f"{rule.reason} (allowed: {rule.allows})"
    if name in SAFE_NAMES or not audited:
        return None
    return (f"searchd's parameter audit (of scikit-learn {AUDITED_SKLEARN}) does not know "
            "this parameter; leave it at its default")
