"""Containment: policy rules, guards, the audit hook and OS limits."""

from ..runtime.results import Violation
from .policy import AttributeRule, FunctionRule, ImportRule, Policy, RegexRule

__all__ = ["AttributeRule", "FunctionRule", "ImportRule", "Policy", "RegexRule", "Violation"]
