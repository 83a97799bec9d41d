"""Serving: the model server (`flywheel serve`), its request logs, replaying spans as traffic, and joining
labels to logs.

- `models`: the version registry (TF Serving's file-system source: scan, load, warm up, switch, unload).
- `codec`: TF Serving's JSON request/response formats (row `instances`, columnar `inputs`) and its errors.
- `batching`: server-side batching of concurrent requests into one TensorFlow call.
- `server`: the Starlette app (`create_app`) with the REST routes and Prometheus metrics.
- `warmup`: `assets.extra/tf_serving_warmup_requests`, written by Push and replayed before a version serves.
- `request_log`: sampled requests and predictions as Parquet under span-N/ folders.
- `replay`: a span's rows sent as TF Serving REST requests; `join`: labels joined to logged predictions.
"""
