"""A ResponsesAgent (models from code): its predict_stream yields a text delta per word, then the item."""

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent


def _text(request):
    return request.input[-1].content


class WordAgent(ResponsesAgent):
    def predict(self, request):
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=_text(request), id="msg-1")])

    def predict_stream(self, request):
        for word in _text(request).split():
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=word, item_id="msg-1"))
        item = self.create_text_output_item(text=_text(request), id="msg-1")
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)


mlflow.models.set_model(WordAgent())
