"""Containment: policy rules, guards, the audit hook and OS limits."""

from .policy import AttributeRule, FunctionRule, ImportRule, Policy, RegexRule
from .violation import Violation

__all__ = ["AttributeRule", "FunctionRule", "ImportRule", "Policy", "RegexRule", "Violation"]
