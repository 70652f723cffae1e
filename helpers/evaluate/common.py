"""What every part of the evaluation shares: the answer's fields and the error it raises."""

FIELD_KEYS = ("category", "product", "order_id", "priority")  # the categorical / identifier fields
SUMMARY_KEY = "summary"
INVALID = "<invalid>"  # the "class" of a prediction with no usable category


class EvaluationError(ValueError):
    """Input the evaluation cannot score; the message names what, where and the fix."""
