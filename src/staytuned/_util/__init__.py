"""Small helpers with one home each: atomic writes (``io``), NAME=VALUE parsing (``parse``) and
YAML/JSON mapping files (``mapping``). Private to staytuned; light (stdlib, yaml inside functions)."""
