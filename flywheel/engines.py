"""What the engine names mean to Beam: the DirectRunner's pipeline arguments for `local` and `beam`.

`local`: the DirectRunner in this process, one worker. `beam`: its multi-processing mode with two worker
processes: what the Beam runner gives the pipeline's components unless other Beam args are given
(`pipelines/taxi/beam_runner.py`), and what `flywheel predict --engine beam` scores with.
"""

IN_PROCESS_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
MULTI_PROCESSING_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
BEAM_ARGS = {"local": IN_PROCESS_ARGS, "beam": MULTI_PROCESSING_ARGS}
