"""Offline evaluation: retrieval metrics on BEIR data sets, paired run comparison, ANN recall,
intrinsic word-vector tests and drift between embedding versions. (Recommendation metrics live in
`embedscope.evaluate.recs`.)"""
