"""Realistic response bodies for the simulated service.

RecoveryOS's ten elite endpoints answer with exactly the top-level fields the real service
returns (``RESPONSE_FIELDS``, from the service's API reference): no more, no less, and in
particular no ``result`` where the service has none. A plan that requires a field the service
does not return therefore sees every healthy answer as null here too, as it would in
production: the sandbox never fills in what a plan asks for on these endpoints. An endpoint of
any other plan gets a generic body with each of its ``required_fields`` filled in (non-null).

Bodies deliberately carry what a PII detector must NOT flag, nested inside the documented
fields: UUIDs, hex trace ids, ISO timestamps, 10-digit Unix times, decimals, and the service's
redaction markers such as ``[EMAIL_REDACTED]``. Only the ``pii`` fault puts real-looking
personal data in a body.
"""

from __future__ import annotations

import base64
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]

# Unredacted personal data for the pii fault: each matches what a detector looks for (the
# card number is Luhn-valid: the Visa test number).
PII_SAMPLES: dict[str, tuple[str, str]] = {
    "email": ("contact_email", "jane.doe@example.com"),
    "ssn": ("ssn", "123-45-6789"),
    "phone": ("phone", "(555) 123-4567"),
    "card": ("payment_card", "4111 1111 1111 1111"),
}

# The top-level fields of a healthy 200 answer of each elite endpoint, as the real service
# returns them (its API reference, "response_fields"). Every one is non-null.
RESPONSE_FIELDS: dict[str, tuple[str, ...]] = {
    "continual_learning": ("task_id", "training_result", "knowledge_retention", "timestamp"),
    "federated_learning": ("global_weights_updated", "training_metrics", "client_id",
                           "federated_round", "timestamp"),
    "edge_ai": ("deployment_id", "model_type", "original_request", "client_code",
                "deployment_status", "timestamp"),
    "differential_privacy": ("analysis_type", "privacy_epsilon", "result", "privacy_guaranteed",
                             "timestamp"),
    "causal_analysis": ("target", "user_state", "direct_factors", "all_causal_factors",
                        "top_risk_factors", "intervention_recommendations", "timestamp"),
    "neuromorphic": ("emotional_inputs", "network_response", "emotional_stability",
                     "processing_efficiency", "emotional_regulation", "timestamp"),
    "graph_neural": ("user_id", "user_state", "predicted_outcomes", "influence_analysis",
                     "critical_paths", "intervention_recommendations", "graph_complexity",
                     "timestamp"),
    "quantum_crypto": ("key_id", "algorithm", "ciphertext", "timestamp"),
    "explainable_ai": ("input_data", "prediction", "explanations", "consensus",
                       "explanation_quality", "timestamp"),
    "homomorphic": ("operation", "result", "privacy_guaranteed", "computation_summary",
                    "timestamp"),
}

REDACTION_MARKERS = ("[EMAIL_REDACTED]", "[SSN_REDACTED]", "[PHONE_REDACTED]", "[CARD_REDACTED]")


def timestamp(now: float | None = None) -> str:
    """ISO 8601 UTC with microseconds, as the service writes it."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def feature_title(feature: str) -> str:
    """``edge_ai`` -> ``Edge AI``: how the service names a feature in its messages."""
    return " ".join(w.upper() if w in ("ai", "ml", "api") else w.capitalize() for w in feature.split("_"))


def error_body(status: int, detail: str) -> Body:
    return {"detail": detail, "status_code": status, "timestamp": timestamp()}


class Bodies:
    """Builds bodies; holds the little state a real service would have (rounds, counters)."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        self.federated_round = 41
        self.tasks_learned = 6

    # -- helpers -------------------------------------------------------------------------

    def _id(self, prefix: str = "", n: int = 12) -> str:
        return f"{prefix}{self.rng.getrandbits(4 * n):0{n}x}"

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _p(self, low: float, high: float, digits: int = 4) -> float:
        return round(self.rng.uniform(low, high), digits)

    def _trace(self) -> Body:
        """Request bookkeeping the service nests in its answers: ids and times, never PII."""
        return {
            "request_id": self._uuid(),
            "trace_id": self._id(n=32),
            "processing_time_ms": self._p(2, 40, 2),
            "processed_at_unix": int(time.time()),
        }

    # -- the ten elite endpoints: exactly RESPONSE_FIELDS at the top level ----------------

    def continual_learning(self, req: Body) -> Body:
        self.tasks_learned += 1
        samples = len(req.get("task_data") or []) or 1
        return {
            "task_id": str(req.get("task_id") or "stress_prediction"),
            "training_result": {
                "status": "completed",
                "epochs": 12,
                "samples_processed": samples * 128,
                "loss": self._p(0.05, 0.12),
                "accuracy": self._p(0.88, 0.95),
                "tasks_learned": self.tasks_learned,
                "model_version": "cl-2.3.1",
                "audit": {"requested_by": "[EMAIL_REDACTED]", "clinician_phone": "[PHONE_REDACTED]",
                          **self._trace()},
            },
            "knowledge_retention": self._p(0.93, 0.98),
            "timestamp": timestamp(),
        }

    def federated_learning(self, req: Body) -> Body:
        self.federated_round += 1
        return {
            "global_weights_updated": True,
            "training_metrics": {
                "loss": self._p(0.08, 0.2),
                "accuracy": self._p(0.85, 0.93),
                "participating_clients": 12,
                "aggregation": "fedavg",
                "privacy_budget_remaining": self._p(0.6, 0.9, 3),
                **self._trace(),
            },
            "client_id": str(req.get("client_id") or "clinic_001"),
            "federated_round": self.federated_round,
            "timestamp": timestamp(),
        }

    def edge_ai(self, req: Body) -> Body:
        return {
            "deployment_id": self._id("edge-"),
            "model_type": str(req.get("model_type") or "emotion_classifier"),
            "original_request": {"model_type": req.get("model_type"), "submitted_by": "[EMAIL_REDACTED]",
                                 **self._trace()},
            "client_code": f"RCV-EDGE-{self.rng.randrange(1, 10000):04d}",
            "deployment_status": {
                "state": "deployed",
                "model_size_kb": self.rng.randrange(3800, 4400),
                "quantization": "int8",
                "target_devices": 240,
            },
            "timestamp": timestamp(),
        }

    def differential_privacy(self, req: Body) -> Body:
        records = len(req.get("data") or []) or 1
        return {
            "analysis_type": str(req.get("analysis_type") or "emotion_analysis"),
            "privacy_epsilon": 1.0,
            "result": {
                "records_analyzed": records,
                "noisy_sentiment": {"positive": self._p(0.4, 0.6), "negative": self._p(0.3, 0.5)},
                "redacted_samples": ["[EMAIL_REDACTED] wrote: Happy mood today", "Call [PHONE_REDACTED]"],
                "delta": 1e-05,
                **self._trace(),
            },
            "privacy_guaranteed": True,
            "timestamp": timestamp(),
        }

    def causal_analysis(self, req: Body) -> Body:
        state = req.get("user_state") if isinstance(req.get("user_state"), dict) else {}
        factors = {
            "sleep_hours": self._p(0.2, 0.4),
            "exercise_minutes": -self._p(0.1, 0.3),
            "stress": self._p(0.3, 0.5),
            "mood": -self._p(0.05, 0.2),
        }
        ranked = sorted(factors, key=lambda k: -abs(factors[k]))
        return {
            "target": "relapse_risk",
            "user_state": state,
            "direct_factors": {k: factors[k] for k in ranked[:2]},
            "all_causal_factors": factors,
            "top_risk_factors": [{"factor": k, "effect": factors[k]} for k in ranked[:3] if factors[k] > 0],
            "intervention_recommendations": [
                {"intervention": "increase_sleep", "expected_effect": self._p(0.05, 0.15),
                 "evidence": {"method": "do-calculus", **self._trace()}},
            ],
            "timestamp": timestamp(),
        }

    def neuromorphic(self, req: Body) -> Body:
        inputs = req.get("emotional_inputs") if isinstance(req.get("emotional_inputs"), dict) else {}
        return {
            "emotional_inputs": inputs,
            "network_response": {
                "spike_rate_hz": self._p(30, 60, 1),
                "neurons_activated": self.rng.randrange(900, 1600),
                "state_vector": [self._p(0, 1, 3) for _ in range(4)],
                "chip": "loihi-sim",
                **self._trace(),
            },
            "emotional_stability": self._p(0.6, 0.9),
            "processing_efficiency": self._p(0.8, 0.97),
            "emotional_regulation": {"strategy": "reappraisal", "strength": self._p(0.4, 0.8)},
            "timestamp": timestamp(),
        }

    def graph_neural(self, req: Body) -> Body:
        data = req.get("user_data") if isinstance(req.get("user_data"), dict) else {}
        return {
            "user_id": self._id("usr-", 10),
            "user_state": data,
            "predicted_outcomes": {"relapse_risk": self._p(0.05, 0.2), "engagement": self._p(0.6, 0.9)},
            "influence_analysis": {"support_network_score": self._p(0.7, 0.85), "key_connections": 2,
                                   **self._trace()},
            "critical_paths": [["peer_support", "sponsor"], ["family", "clinician"]],
            "intervention_recommendations": ["schedule_peer_check_in"],
            "graph_complexity": {"nodes": 1842, "edges": 9310, "embedding_dim": 64},
            "timestamp": timestamp(),
        }

    def quantum_crypto(self, req: Body) -> Body:
        return {
            "key_id": self._id("qk-"),
            "algorithm": "CRYSTALS-Kyber-768",
            "ciphertext": base64.b64encode(self.rng.randbytes(48)).decode(),
            "timestamp": timestamp(),
        }

    def explainable_ai(self, req: Body) -> Body:
        given = req.get("input_data")
        if not isinstance(given, dict):
            given = {}
        features = given.get("features") or [0.0]
        weights = [self._p(0, 1, 3) for _ in features]
        total = sum(weights) or 1.0
        return {
            "input_data": given,
            "prediction": {"label": "relapse_risk_low", "probability": self._p(0.75, 0.9)},
            "explanations": {
                "shap": {f"feature_{i}": round(w / total, 3) for i, w in enumerate(weights)},
                "lime": {f"feature_{i}": round(w / total * 0.9, 3) for i, w in enumerate(weights)},
                **self._trace(),
            },
            "consensus": {"agreement": self._p(0.8, 0.95), "methods": ["shap", "lime"]},
            "explanation_quality": self._p(0.7, 0.9),
            "timestamp": timestamp(),
        }

    def homomorphic(self, req: Body) -> Body:
        data = req.get("data") or []
        numbers = [x for x in data if isinstance(x, int | float) and not isinstance(x, bool)]
        return {
            "operation": str(req.get("operation") or "secure_sum"),
            "result": float(sum(numbers)),
            "privacy_guaranteed": True,
            "computation_summary": {
                "scheme": "paillier",
                "key_bits": 1024,
                "encrypted_values": len(numbers),
                "encrypted_result": self._id(n=64),
                **self._trace(),
            },
            "timestamp": timestamp(),
        }

    def generic(self, req: Body) -> Body:
        return {
            "result": {
                "status": "ok",
                "items_processed": self.rng.randrange(1, 500),
                "score": self._p(0, 1),
                "note": "contact [EMAIL_REDACTED] for details",
                **self._trace(),
            },
            "timestamp": timestamp(),
        }

    # -- entry points ----------------------------------------------------------------------

    def build(self, endpoint: str, required: list[str] | tuple[str, ...], request_body: Any) -> Body:
        """The normal 200 body of ``endpoint``.

        An elite endpoint answers exactly what the real service does, whatever the plan
        requires; any other endpoint answers a generic body with ``required`` filled in.
        """
        req = request_body if isinstance(request_body, dict) else {}
        known = _BUILDERS.get(endpoint)
        if known is not None:
            return known(self, req)
        body = self.generic(req)
        for name in required:
            _fill(body, name, self._placeholder(name))
        return body

    def _placeholder(self, field: str) -> Any:
        """A plausible non-null value for a required field the generic body lacks."""
        leaf = field.rsplit(".", 1)[-1].lower()
        if leaf == "timestamp" or leaf.endswith("_at"):
            return timestamp()
        if leaf.endswith("_id") or leaf == "id":
            return self._id(leaf.removesuffix("_id")[:8] + "-" if leaf != "id" else "")
        if any(w in leaf for w in ("count", "total", "round", "number")):
            return self.rng.randrange(1, 1000)
        if any(w in leaf for w in ("ratio", "rate", "score", "retention", "probability", "confidence")):
            return self._p(0.5, 1)
        if leaf.startswith(("is_", "has_")) or leaf.endswith(("_updated", "_enabled")):
            return True
        if leaf.endswith("status"):
            return "ok"
        if leaf == "result":
            return {"status": "ok"}
        return f"{leaf}-{self._id(n=8)}"


_BUILDERS: dict[str, Callable[[Bodies, Body], Body]] = {
    name: getattr(Bodies, name) for name in RESPONSE_FIELDS
}


def answers_exactly(endpoint: str) -> bool:
    """Whether the sandbox answers ``endpoint`` with the real service's fixed shape."""
    return endpoint in _BUILDERS


def _fill(body: Body, field: str, value: Any) -> None:
    """Set a (dotted) field unless it already holds a non-null value."""
    *parents, leaf = field.split(".")
    node = body
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if node.get(leaf) is None:
        node[leaf] = value


def null_field(body: Body, field: str | None, required: list[str]) -> str:
    """Null one required field (``field``, or the first; ``result`` when none is required)."""
    name = field or (required[0] if required else "result")
    *parents, leaf = name.split(".")
    node = body
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = None
    return name


def add_pii(body: Body, kind: str | None) -> None:
    """Leak unredacted personal data into the body, as a broken redaction filter would."""
    kinds = [kind] if kind else list(PII_SAMPLES)
    leaked = {PII_SAMPLES[k][0]: PII_SAMPLES[k][1] for k in kinds}
    body["patient_context"] = {"name": "Jane Doe", **leaked}
