"""The taxi model's features and label: names only, shared by preprocessing, model and evaluation."""

LABEL_KEY = "tips"
FARE_KEY = "fare"
# Binary label: the tip was more than 20% of the fare ("big tipper", about 22.5% of rows).
BIG_TIP_SHARE = 0.2

DENSE_FLOAT_FEATURE_KEYS = ("trip_miles", "fare", "trip_seconds")
# Fixed bucket boundaries (the city's extent) instead of quantile analyzers: cheaper, and stable
# across retrainings, so a warm-started model's buckets keep their meaning.
BUCKET_BOUNDARIES = {
    "pickup_latitude": tuple(41.64 + 0.04 * i for i in range(1, 10)),
    "pickup_longitude": tuple(-87.94 + 0.04 * i for i in range(1, 10)),
}
BUCKET_FEATURE_KEYS = tuple(BUCKET_BOUNDARIES)
BUCKET_COUNT = 10
CATEGORICAL_FEATURE_KEYS = ("trip_start_hour", "trip_start_day", "trip_start_month")
CATEGORICAL_MAX_VALUES = (24, 8, 13)
VOCAB_FEATURE_KEYS = ("payment_type",)
VOCAB_SIZE = 100
OOV_SIZE = 5

SLICE_FEATURE_KEYS = ("trip_start_hour", "payment_type")


def transformed_name(key: str) -> str:
    return key + "_xf"


LABEL_XF = transformed_name(LABEL_KEY)
