"""Activity names, shared by the workflow (which must not import the activity
modules: they pull in numpy and onnxruntime) and the workers that register them."""

RESOLVE_VERIFICATION_MODELS = "resolve_verification_models"
CHECK_QUALITY = "check_quality"
CHECK_BIOMETRICS = "check_biometrics"
ISSUE_CREDENTIAL = "issue_credential"
RECORD = "record_verification"
FIND_EXPIRED = "find_expired_verifications"
PURGE_VERIFICATION = "purge_verification"
SELECT_BACKTEST_CASES = "select_backtest_cases"
LOAD_BACKTEST_INPUTS = "load_backtest_inputs"
RECORD_BACKTEST = "record_backtest"
AUTHORIZE_REVIEW = "authorize_review"
