"""Realistic response bodies for the simulated service.

RecoveryOS's ten elite endpoints get bodies shaped like the documented API (the reference
lists the response fields of three of them; the others answer ``result`` plus a few fields).
An endpoint of any other plan gets a generic body. Every body then gets each of the
endpoint's ``required_fields`` filled in (non-null), so a healthy sandbox never looks broken.

Bodies deliberately carry what a PII detector must NOT flag: UUIDs, hex trace ids, ISO
timestamps, 10-digit Unix times, decimals, and the service's redaction markers such as
``[EMAIL_REDACTED]``. Only the ``pii`` fault puts real-looking personal data in a body.
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

    def _common(self) -> Body:
        return {
            "request_id": self._uuid(),
            "trace_id": self._id(n=32),
            "processing_time_ms": self._p(2, 40, 2),
            "processed_at_unix": int(time.time()),
            "timestamp": timestamp(),
        }

    # -- the ten elite endpoints -----------------------------------------------------------

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
            },
            "knowledge_retention": self._p(0.93, 0.98),
            "tasks_learned": self.tasks_learned,
            "model_version": "cl-2.3.1",
            "audit": {"requested_by": "[EMAIL_REDACTED]", "clinician_phone": "[PHONE_REDACTED]"},
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
            },
            "client_id": str(req.get("client_id") or "clinic_001"),
            "federated_round": self.federated_round,
            "privacy_budget_remaining": self._p(0.6, 0.9, 3),
        }

    def edge_ai(self, req: Body) -> Body:
        return {
            "deployment_id": self._id("edge-"),
            "model_type": str(req.get("model_type") or "emotion_classifier"),
            "original_request": {"model_type": req.get("model_type"), "submitted_by": "[EMAIL_REDACTED]"},
            "client_code": f"RCV-EDGE-{self.rng.randrange(1, 10000):04d}",
            "deployment_status": "deployed",
            "model_size_kb": self.rng.randrange(3800, 4400),
            "quantization": "int8",
            "target_devices": 240,
        }

    def differential_privacy(self, req: Body) -> Body:
        records = len(req.get("data") or []) or 1
        return {
            "result": {
                "analysis_type": str(req.get("analysis_type") or "emotion_analysis"),
                "records_analyzed": records,
                "noisy_sentiment": {"positive": self._p(0.4, 0.6), "negative": self._p(0.3, 0.5)},
                "redacted_samples": ["[EMAIL_REDACTED] wrote: Happy mood today", "Call [PHONE_REDACTED]"],
            },
            "epsilon": 1.0,
            "delta": 1e-05,
            "privacy_guarantee": "(1.0, 1e-05)-differential privacy",
        }

    def causal_analysis(self, req: Body) -> Body:
        return {
            "result": {
                "causal_effects": {
                    "sleep_hours->mood": self._p(0.2, 0.4),
                    "exercise_minutes->stress": -self._p(0.1, 0.3),
                },
                "recommended_intervention": "increase_sleep",
                "confidence": self._p(0.75, 0.9),
            },
            "method": "do-calculus",
            "graph_version": "2024.11.2",
        }

    def neuromorphic(self, req: Body) -> Body:
        inputs = req.get("emotional_inputs") or {}
        dominant = max(inputs, key=lambda k: inputs[k]) if isinstance(inputs, dict) and inputs else "calm"
        return {
            "result": {
                "dominant_emotion": dominant,
                "spike_rate_hz": self._p(30, 60, 1),
                "neurons_activated": self.rng.randrange(900, 1600),
                "state_vector": [self._p(0, 1, 3) for _ in range(4)],
            },
            "chip": "loihi-sim",
        }

    def graph_neural(self, req: Body) -> Body:
        return {
            "result": {
                "support_network_score": self._p(0.7, 0.85),
                "risk_level": "low",
                "recommended_connections": 2,
                "embedding_dim": 64,
            },
            "graph_nodes": 1842,
            "model": "graphsage-v3",
        }

    def quantum_crypto(self, req: Body) -> Body:
        ciphertext = base64.b64encode(self.rng.randbytes(48)).decode()
        return {
            "result": {
                "ciphertext": ciphertext,
                "algorithm": "CRYSTALS-Kyber-768",
                "key_id": self._id("qk-"),
                "key_type": str(req.get("key_type") or "quantum"),
            },
            "security_level_bits": 192,
        }

    def explainable_ai(self, req: Body) -> Body:
        features = (req.get("input_data") or {}).get("features") or [0.0]
        weights = [self._p(0, 1, 3) for _ in features]
        total = sum(weights) or 1.0
        return {
            "result": {
                "prediction": "relapse_risk_low",
                "probability": self._p(0.75, 0.9),
                "feature_importance": {f"feature_{i}": round(w / total, 3) for i, w in enumerate(weights)},
                "explanation_method": "SHAP",
            },
            "model_version": "xai-1.8.0",
        }

    def homomorphic(self, req: Body) -> Body:
        data = req.get("data") or []
        numbers = [x for x in data if isinstance(x, int | float) and not isinstance(x, bool)]
        return {
            "result": {
                "operation": str(req.get("operation") or "secure_sum"),
                "encrypted_result": self._id(n=64),
                "decrypted_verification": float(sum(numbers)),
                "scheme": "CKKS",
            },
            "ciphertext_modulus_bits": 438,
        }

    def generic(self, req: Body) -> Body:
        return {
            "result": {
                "status": "ok",
                "items_processed": self.rng.randrange(1, 500),
                "score": self._p(0, 1),
                "note": "contact [EMAIL_REDACTED] for details",
            },
        }

    # -- entry points ----------------------------------------------------------------------

    def build(self, endpoint: str, required: list[str], request_body: Any) -> Body:
        """The normal 200 body of ``endpoint``; every required field present and non-null."""
        req = request_body if isinstance(request_body, dict) else {}
        builder: Callable[[Body], Body] = _BUILDERS.get(endpoint, Bodies.generic).__get__(self)
        body = {**builder(req), **self._common()}
        for name in required:
            _fill(body, name, self._placeholder(name))
        return body

    def _placeholder(self, field: str) -> Any:
        """A plausible non-null value for a required field no builder produced."""
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


_BUILDERS = {
    name: getattr(Bodies, name)
    for name in (
        "continual_learning", "federated_learning", "edge_ai", "differential_privacy", "causal_analysis",
        "neuromorphic", "graph_neural", "quantum_crypto", "explainable_ai", "homomorphic",
    )
}


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
