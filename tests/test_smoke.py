async def test_two_clients_receive_the_rebroadcast(channels_ws):
    a = await channels_ws()
    b = await channels_ws()
    await a.join("chat:lobby")
    await b.join("chat:lobby")
    offset = await a.publish("chat:lobby", "text", {"text": "hi"})
    (ma,) = await a.messages(1)
    (mb,) = await b.messages(1)
    assert ma == mb
    assert ma["offset"] == offset == 1
