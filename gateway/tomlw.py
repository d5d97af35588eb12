"""Write small TOML documents (gateway configs: the commented file of
`hcp gateway init`, the simulator's and the tests' halls): tables of
scalars, lists and inline tables, and arrays of tables. Python reads TOML
(tomllib) but has no writer."""

import json


def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, value(x)) for k, x in v.items()) + " }"
    raise TypeError("cannot write %r as TOML" % (v,))


def dumps(doc):
    """{"table": {...}, "array": [{...}, ...]} -> TOML text."""
    out = []
    for name, table in doc.items():
        if isinstance(table, list):
            for item in table:
                out.append("[[%s]]" % name)
                out += ["%s = %s" % (k, value(v)) for k, v in item.items()]
                out.append("")
        else:
            out.append("[%s]" % name)
            out += ["%s = %s" % (k, value(v)) for k, v in table.items()]
            out.append("")
    return "\n".join(out)
