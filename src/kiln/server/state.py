"""ServerState: what the endpoints share, and the parse -> predict -> serialise step."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.server.content import MediaKind
from kiln.server.errors import INTERNAL_ERROR, ScoringFailure, from_exception
from kiln.server.metrics import Metrics
from kiln.server.overload import QueueGate
from kiln.server.parsing import parse_request
from kiln.server.predict import Predictor
from kiln.server.serialize import predictions_json
from kiln.server.timeout import PredictLane
from kiln.server.v2.metadata import V2Model
from kiln.settings import RuntimeSettings


@dataclass
class ServerState:
    """``predictor``, ``lane`` and ``v2`` are set once the model is loaded."""

    settings: RuntimeSettings
    metrics: Metrics | None
    mlflow_version: str = "unknown"
    predictor: Predictor | None = None
    lane: PredictLane | None = None
    v2: V2Model | None = None
    """The model as the V2 endpoints describe it (None with ``settings.v2`` off)."""
    queue: QueueGate = field(init=False)
    """The worker's queue limit, shared by every scoring endpoint."""

    def __post_init__(self) -> None:
        self.queue = QueueGate(self.settings.max_queue)

    def score(self, body: bytes, kind: MediaKind) -> tuple[int, bytes]:
        """Status and JSON body for one request body (runs on the predict lane)."""
        predictor = self.predictor
        assert predictor is not None
        try:
            request = parse_request(body, kind, predictor.contract)
            prediction = predictor.predict(request.data, request.params, conforms=request.conforms)
            try:
                return 200, predictions_json(prediction, unwrapped=request.unwrapped)
            except TypeError as exc:
                raise ScoringFailure(
                    f"the model's prediction could not be serialised to JSON: {exc}",
                    status=500,
                    error_code=INTERNAL_ERROR,
                ) from exc
        except Exception as exc:
            return from_exception(exc, expose_tracebacks=self.settings.expose_tracebacks)
