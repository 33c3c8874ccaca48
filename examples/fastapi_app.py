"""A FastAPI app whose jobs run inside it: async mode, a worker started and stopped with the app
(`uvicorn fastapi_app:app`)."""

import asyncio

from fastapi import FastAPI

import goodjob
from goodjob.contrib.asgi import lifespan

gj = goodjob.GoodJob(execution_mode="async", max_threads=2)  # DATABASE_URL from the environment


@gj.task(queue="mail")
async def send_welcome(address: str) -> str:
    await asyncio.sleep(0)  # an API call, say
    return f"welcome sent to {address}"


app = FastAPI(lifespan=lifespan(gj))


@app.post("/signup")
async def signup(address: str) -> dict[str, str]:
    job = await send_welcome.aenqueue(address)
    return {"job": str(job.id)}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, object]:
    job = await asyncio.to_thread(gj.job, job_id)
    return {"status": job.status, "result": job.result}
