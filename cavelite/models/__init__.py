"""Model adapters behind one seam (`Model`): Anthropic, OpenAI-compatible, scripted."""

from cavelite.models.anthropic import AnthropicModel as AnthropicModel
from cavelite.models.base import Image as Image
from cavelite.models.base import Message as Message
from cavelite.models.base import Model as Model
from cavelite.models.base import ModelReply as ModelReply
from cavelite.models.base import RetryNotice as RetryNotice
from cavelite.models.openai import OpenAIModel as OpenAIModel
from cavelite.models.scripted import ScriptedModel as ScriptedModel

__all__ = ["Model", "ModelReply", "Message", "Image", "RetryNotice", "AnthropicModel", "OpenAIModel",
           "ScriptedModel"]
