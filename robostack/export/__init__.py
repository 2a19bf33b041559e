"""Export trained policies to self-describing ONNX models (observation history -> safe executed action chunk)."""

from robostack.export.metadata import ModelMeta, read_model_meta
from robostack.export.onnx_export import ExportConfig, ExportReport, export_policy

__all__ = ["ExportConfig", "ExportReport", "ModelMeta", "export_policy", "read_model_meta"]
