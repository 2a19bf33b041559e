"""Export trained policies to self-describing ONNX models (observation history -> safe executed action chunk)."""

from robostack.export.onnx_export import ExportConfig, ExportReport, export_policy
from robostack.runtime.model_meta import ModelMeta, read_model_meta

__all__ = ["ExportConfig", "ExportReport", "ModelMeta", "export_policy", "read_model_meta"]
