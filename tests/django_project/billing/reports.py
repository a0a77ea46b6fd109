from proj.qtasks import reports


@reports.task
def monthly():
    return "report"
