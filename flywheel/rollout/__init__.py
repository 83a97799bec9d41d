"""Progressive delivery of served models: the rollout state beside the versions (`state`), its TF Serving and
KServe mirrors (`manifests`) and its record in ML-Metadata (`mlmd`)."""
