"""The test gateway's records go to the `gateway` database, everything else stays on `default`.

A real card processor keeps its own books; a rollback of Carnet's transaction cannot undo a charge
it made. The test gateway gets the same property by writing to a database of its own.
"""

TEST_GATEWAY_MODELS = {"testgatewaycard", "testgatewaycharge", "testgatewayrefund"}
ALIAS = "gateway"


def _is_remote(model) -> bool:
    meta = getattr(model, "_meta", None)
    return (
        meta is not None and meta.app_label == "gateway" and meta.model_name in TEST_GATEWAY_MODELS
    )


class TestGatewayRouter:
    __test__ = False

    def db_for_read(self, model, **hints):
        return ALIAS if _is_remote(model) else None

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        if _is_remote(obj1) or _is_remote(obj2):
            return _is_remote(obj1) and _is_remote(obj2)
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        remote = app_label == "gateway" and model_name in TEST_GATEWAY_MODELS
        if db == ALIAS:
            return remote
        return False if remote else None
