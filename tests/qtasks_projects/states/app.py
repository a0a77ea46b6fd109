from qtasks.asyncio import QueueTasks
from qtasks.plugins import AsyncState
from qtasks.registries import AsyncTask

app = QueueTasks()


class Signup(AsyncState):
    pass


@app.task
async def ask_phone(state: Signup):
    await state.set("step", "phone")
    await state.update(prompt="Your phone number?")
    return "asked"


@app.task(echo=True)
async def got_phone(self: AsyncTask, state: Signup, phone: str):
    seen = await state.get_all()
    if await state.get("step") != "phone":
        return "out of order"
    await state.clear()
    return f"{seen['prompt']} {phone}"


if __name__ == "__main__":
    app.run_forever()
