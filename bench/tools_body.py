#!/usr/bin/env python3
"""tools_body.py OUT.lua: a wrk script that POSTs a chat request carrying 20
function tools of 8 described parameters each (25,542 bytes), the shape
agent clients send. Used for the "request with tools" figures in
bench/RESULTS.md (callgrind of one aiproxyd, wrk -c2 -s OUT.lua)."""
import json
import sys

tools = []
for i in range(20):
    props = {}
    for j in range(8):
        p = {"type": "string",
             "description": f"The {j}th argument of tool {i}, which does something useful with files and directories."}
        if j % 3 == 0:
            p["enum"] = ["a", "b", "c"]
        props[f"arg{j}"] = p
    tools.append({"type": "function", "function": {
        "name": f"tool_{i}",
        "description": f"Tool number {i}: reads, writes and searches things in the workspace.",
        "parameters": {"type": "object", "properties": props, "required": ["arg0", "arg1"]}}})
body = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "Say hello"}], "tools": tools},
                  separators=(",", ":"))
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.body = ' + json.dumps(body) + '\nwrk.headers["Content-Type"] = "application/json"\n')
print(len(body), "bytes")
