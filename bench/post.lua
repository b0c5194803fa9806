-- wrk script: POST /tasks with a JSON body (a type-0 task, which sleeps 0 s).
wrk.method = "POST"
wrk.body = '{"type": 0}'
wrk.headers["Content-Type"] = "application/json"
