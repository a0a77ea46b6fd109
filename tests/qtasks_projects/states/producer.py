import asyncio

from app import ask_phone, got_phone


async def main():
    print("ask", (await ask_phone.add_task(timeout=30)).returning)
    print("got", (await got_phone.add_task(phone="555", timeout=30)).returning)
    print("again", (await got_phone.add_task(phone="555", timeout=30)).returning)


asyncio.run(main())
