"""Beam's DaskRunner with the translation batch pipelines that write files need.

`--runner=flywheel.dask_runner.DaskRunner --dask_client_address=HOST:PORT` runs a Beam pipeline on a running
dask.distributed cluster (docs/distributed.md).

Beam 2.74's `apache_beam.runners.dask.dask_runner.DaskRunner` turns a pipeline into dask.bag operations and runs
them on a dask.distributed cluster. Its translation (`transform_evaluator.py`, `overrides.py`) loses data without
an error in four places, each reproduced on a real cluster in `tests/e2e/test_dask_cluster.py`:

1. Only the last leaf is computed (`client.compute` of the last bag): every other sink of the pipeline never runs.
2. A DoFn's tagged outputs are not told apart: every consumer of `outputs["x"]` gets all of the DoFn's outputs.
3. What `finish_bundle` emits is dropped (the bundle's results are read before it runs): Beam's file sinks
   (`WriteToText`, `WriteToTFRecord`, `WriteToParquet`, all through `iobase.WriteImpl`) finalize nothing and leave
   one empty shard, the rows left in `beam-temp-*` folders.
4. A side input is a whole dask graph computed again inside every task that reads it: side effects upstream of
   it run again (the file sinks write each bundle twice, into a new temporary folder).

Besides, `beam.io.Read` (ReadFromText, ReadFromTFRecord) and a lone `Impulse` translate to nothing (their output
is None), and any other unknown primitive to the identity.

This runner keeps Beam's own pieces (the Create, Reshuffle, Read, GroupByKey and Flatten overrides, the grouping
as a dask.bag `groupby`, Beam's DoFn invoker) and corrects those: every leaf is computed in one graph, left
unoptimized (dask's fusion would copy a DoFn's task into each consumer of its outputs and run it once per
consumer); a DoFn's bag holds (tag, value) pairs that each consumer selects from; a bundle's results are read after
`finish_bundle`, into receivers made for that bundle; a side input is one graph node, computed once, that each task
receives; a bounded source is split where the pipeline is launched and each split read in its own partition.
Windowing is not translated (as in Beam's runner): values live in the global window, which is what batch
pipelines use.
A transform it cannot run (a splittable or stateful DoFn, a window other than the global one, an unknown
primitive) fails the launch with its label instead of being skipped.

The cluster, its scheduling and its shuffles are dask.distributed's; Beam's options apply unchanged
(`--dask_client_address`, `--dask_scheduler_file`, `--dask_npartitions`, ...: `DaskOptions`).
"""

from __future__ import annotations

import dataclasses
import typing

import apache_beam as beam
import dask
import dask.bag
import dask.distributed
from apache_beam import pvalue
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner, overrides, transform_evaluator
from apache_beam.transforms import sideinputs, window
from apache_beam.utils.windowed_value import WindowedValue

READ_BUNDLE_BYTES = 64 << 20  # desired size of one split of a bounded source

# Transforms whose output is their input in a batch pipeline in the global window: a Reshuffle (dask's partitions
# are already spread over the workers), and the step after the grouping that would group by window.
_IDENTITY = (overrides._Reshuffle, overrides._GroupAlsoByWindow)


class DaskTranslationError(NotImplementedError):
    """The pipeline holds a transform this translation cannot run on Dask (named by its label)."""


def _global(value) -> WindowedValue:
    if isinstance(value, WindowedValue):
        return value
    return WindowedValue(value, 0, (window.GlobalWindow(),))


def _value(value):
    return value.value if isinstance(value, WindowedValue) else value


class _Collect(Receiver):
    """Receives one output of a DoFn in one bundle: (tag, value) into the bundle's list."""

    def __init__(self, tag: typing.Optional[str], into: list):
        self._tag, self._into = tag, into

    def receive(self, windowed_value: WindowedValue) -> None:
        self._into.append((self._tag, _value(windowed_value)))


class _Receivers(dict):
    """Tag -> receiver, made on first use, all collecting into `values`."""

    def __init__(self):
        super().__init__()
        self.values: list = []

    def __missing__(self, tag):
        self[tag] = receiver = _Collect(tag, self.values)
        return receiver


@dataclasses.dataclass(frozen=True)
class _DoFnSpec:
    """What a bundle needs to run a ParDo's DoFn: shipped to the workers with each task."""

    fn: beam.DoFn
    label: str
    args: tuple
    kwargs: dict
    window_fn: typing.Any
    side_views: tuple  # (view class, view options) per side input, in the ParDo's order


def _run_bundle(items, spec: _DoFnSpec, *side_values):
    """One partition through the DoFn (setup, start, every element, finish, teardown): its (tag, value) outputs,
    finish_bundle's included."""
    receivers = _Receivers()
    side_inputs = [sideinputs.SideInputMap(view, options, [_global(v) for v in values])
                   for (view, options), values in zip(spec.side_views, side_values, strict=True)]
    handler = _OutputHandler(window_fn=spec.window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(spec.fn), handler, context=DoFnContext(spec.label, state=None), side_inputs=side_inputs,
        input_args=list(spec.args), input_kwargs=dict(spec.kwargs), user_state_context=None,
        bundle_finalizer_param=beam.DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(_global(item))
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return receivers.values


def _select(pairs, tag):
    return [value for t, value in pairs if t == tag]


def _concat(partitions) -> list:
    return [value for partition in partitions for value in partition]


def _read_split(splits) -> list:
    return [record for split in splits
            for record in split.source.read(split.source.get_range_tracker(split.start_position, split.stop_position))]


def _group_values(group):
    key, pairs = group
    return key, [_value(reified) for _, reified in pairs]


def _key(pair):
    return pair[0]


class _Translation(PipelineVisitor):
    """Each leaf transform to a dask bag; a ParDo's bag holds (tag, value) pairs."""

    def __init__(self, bag_kwargs: dict):
        self._bag_kwargs = bag_kwargs
        self.bags: dict[AppliedPTransform, dask.bag.Bag] = {}
        self._tagged: set[AppliedPTransform] = set()
        self._consumed: set[AppliedPTransform] = set()
        self._side: dict[tuple, typing.Any] = {}

    def leaves(self) -> list:
        """The bags no transform reads: computing them computes the whole pipeline."""
        return [bag for node, bag in self.bags.items() if node not in self._consumed and bag is not None]

    def _input(self, pcoll: pvalue.PCollection) -> dask.bag.Bag:
        producer = pcoll.producer
        self._consumed.add(producer)
        bag = self.bags[producer]
        return bag.map_partitions(_select, pcoll.tag) if producer in self._tagged else bag

    def _side_input(self, view: pvalue.AsSideInput):
        key = (view.pvalue.producer, view.pvalue.tag)
        if key not in self._side:
            bag = self._input(view.pvalue)
            self._side[key] = dask.delayed(_concat, pure=True)(bag.to_delayed(optimize_graph=False))
        return self._side[key]

    def visit_transform(self, node: AppliedPTransform) -> None:
        transform = node.transform
        inputs = [self._input(p) for p in node.inputs if not isinstance(p, pvalue.PBegin)]
        if isinstance(transform, overrides._Create):
            self.bags[node] = transform_evaluator.Create(node, bag_kwargs=self._bag_kwargs).apply(None)
        elif isinstance(transform, beam.Impulse):
            self.bags[node] = dask.bag.from_sequence([b""], npartitions=1)
        elif isinstance(transform, overrides._Read):
            splits = list(transform.source.split(READ_BUNDLE_BYTES))
            self.bags[node] = dask.bag.from_sequence(splits, npartitions=max(len(splits), 1)).map_partitions(
                _read_split)
            for output in node.outputs.values():  # Beam's _Read has no windowing (asking raises): a bounded read's
                output._windowing = beam.Windowing(window.GlobalWindows())  # is the global window
        elif isinstance(transform, _IDENTITY):
            (self.bags[node],) = inputs
        elif isinstance(transform, overrides._GroupByKeyOnly):
            (bag,) = inputs
            self.bags[node] = bag.groupby(_key, shuffle="tasks").map(_group_values)
        elif isinstance(transform, overrides._Flatten):
            self.bags[node] = dask.bag.concat(inputs)
        elif isinstance(transform, beam.ParDo):
            (bag,) = inputs
            self.bags[node] = self._pardo(node, bag)
            self._tagged.add(node)
        else:
            raise DaskTranslationError(f"dask: {node.full_label}: no translation for {type(transform).__name__}")

    def _pardo(self, node: AppliedPTransform, bag: dask.bag.Bag) -> dask.bag.Bag:
        transform = node.transform
        signature = DoFnSignature(transform.fn)
        if signature.is_splittable_dofn() or signature.is_stateful_dofn():
            raise DaskTranslationError(f"dask: {node.full_label}: a splittable or stateful DoFn "
                                       f"({type(transform.fn).__name__}) is not translated")
        main = next(iter(node.main_inputs.values()))
        window_fn = main.windowing.windowfn
        if not isinstance(window_fn, window.GlobalWindows):
            raise DaskTranslationError(f"dask: {node.full_label}: windowing by {type(window_fn).__name__} is not "
                                       "translated (only the global window)")
        args, kwargs = transform.raw_side_inputs
        spec = _DoFnSpec(fn=transform.fn, label=transform.label, args=tuple(args), kwargs=dict(kwargs),
                         window_fn=window_fn,
                         side_views=tuple((type(si), si._view_options()) for si in node.side_inputs))
        return bag.map_partitions(_run_bundle, spec, *[self._side_input(si) for si in node.side_inputs])


class _Result(dask_runner.DaskRunnerResult):
    """Beam's result, closing the pipeline's client once the pipeline has finished or failed."""

    def wait_until_finish(self, duration=None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            if duration is None:
                self.client.close()


class DaskRunner(dask_runner.DaskRunner):
    """Runs a batch pipeline on a dask.distributed cluster (see the module's docstring for what it corrects)."""

    def run_pipeline(self, pipeline, options: PipelineOptions):
        dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(drop_default=True,
                                                                                 current_only=True)
        bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
        pipeline.replace_all(overrides.dask_overrides())
        translation = _Translation(bag_kwargs)
        pipeline.visit(translation)
        client = dask.distributed.Client(**dask_options)
        # Not optimized: dask's bag optimization fuses a task into each of its consumers, which would run a DoFn
        # once per output tag that is read (and repeat its side effects).
        futures = client.compute(translation.leaves(), optimize_graph=False)
        return _Result(client, futures)

