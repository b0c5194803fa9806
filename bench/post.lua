-- wrk script: POST /tasks with form data, as the tutorial's page sends it (a type-0 task).
wrk.method = "POST"
wrk.body = "type=0"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
