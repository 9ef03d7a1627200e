"""Stripe's own webhook signatures, for license-ledger's billing tests (tests/src/stripe.rs).

Reads a JSON array of requests on stdin and writes a JSON array of answers, one per request:
- {"op": "sign", "payload": str, "secret": str, "timestamp": int}
    -> {"header": "t=...,v1=..."} from stripe.WebhookSignature.generate_signature_header;
- {"op": "verify", "payload": str, "header": str, "secret": str, "tolerance": int}
    -> {"ok": bool, "error": str|null} from stripe.WebhookSignature.verify_header.
"""

import json
import sys

import stripe


def answer(request):
    if request["op"] == "sign":
        header = stripe.WebhookSignature.generate_signature_header(
            request["payload"], request["secret"], timestamp=request["timestamp"]
        )
        return {"header": header}
    if request["op"] == "verify":
        try:
            stripe.WebhookSignature.verify_header(
                request["payload"],
                request["header"],
                request["secret"],
                tolerance=request["tolerance"],
            )
            return {"ok": True, "error": None}
        except stripe.SignatureVerificationError as error:
            return {"ok": False, "error": str(error)}
    raise ValueError(f"unknown op {request['op']!r}")


if __name__ == "__main__":
    json.dump([answer(r) for r in json.load(sys.stdin)], sys.stdout)
