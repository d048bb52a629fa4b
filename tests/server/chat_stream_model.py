"""A ChatModel (models from code) whose ``predict_stream`` yields one chunk per word of the last message."""

import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
)


class WordEcho(ChatModel):
    def predict(self, context, messages, params):
        message = ChatMessage(role="assistant", content=messages[-1].content)
        return ChatCompletionResponse(choices=[ChatChoice(index=0, message=message)])

    def predict_stream(self, context, messages, params):
        for word in messages[-1].content.split():
            delta = ChatChoiceDelta(role="assistant", content=word)
            yield ChatCompletionChunk(choices=[ChatChunkChoice(index=0, delta=delta)])


mlflow.models.set_model(WordEcho())
