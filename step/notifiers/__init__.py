"""Chat notifications, as Flagger sends them to its AlertProviders (slack, msteams, discord, rocket, gchat).

`payloads` builds each type's JSON body, `alerts` turns an event of the run into Flagger's alert text
and fields, `sender` POSTs one body within a time budget, `channels` routes an alert to the Canary's
`analysis.alerts` (or the global notifier) and is the `ports.Notifier` the composed event sink calls.
"""
