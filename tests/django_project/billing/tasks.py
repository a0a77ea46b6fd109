from proj.qtasks import app


@app.task
def charge(cents):
    return f"charged {cents}"
