"""Ingest's driver: resolves spans and fingerprints the input files before the cache is consulted.

The fingerprint (sha256 of the files' bytes) becomes an execution property, so a
changed file is a new execution and unchanged data is a cache hit. Orchestrators
that do not run custom drivers (Kubeflow Pipelines) still get the same answer:
the executor resolves the input itself when the driver did not.
"""

from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2

from flywheel.components.ingest import spec
from flywheel.data import inputs


class IngestDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        props = execution_info.exec_properties
        resolved = inputs.resolve_input(props[spec.INPUT_BASE_KEY], props[spec.SPAN_KEY], props[spec.NUM_SPANS_KEY])
        output = driver_output_pb2.DriverOutput()
        output.exec_properties[spec.INPUT_FINGERPRINT_KEY].string_value = resolved.fingerprint
        output.exec_properties[spec.RESOLVED_INPUT_KEY].string_value = resolved.to_json()
        return output
