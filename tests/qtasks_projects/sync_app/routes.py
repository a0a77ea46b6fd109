from qtasks import SyncRouter

router = SyncRouter()


@router.task(description="a task that lives in a router")
def shout(text: str):
    return text.upper()
