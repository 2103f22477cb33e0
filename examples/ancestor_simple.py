"""geeteventbus's first README example, running unchanged on eventbus.compat.

The code below the imports is the ancestor's complete first example, copied
verbatim from its README; only the import lines changed (``geeteventbus.*``
became ``eventbus.compat``). It prints the four events it posts, in any order:
the bus is concurrent, with 8 worker threads, as the ancestor's was.

The ancestor lost most of the queued events at ``shutdown()``; here
``eb.shutdown()`` delivers all four before it returns, so every line is printed
before the final ``sleep(2)`` even starts.
"""

# The ancestor's code is kept as it was written, so neither `ruff format` nor the
# lint rules for modern code apply to it:
# fmt: off
# ruff: noqa: UP031, ANN001, ANN201
from time import sleep

from eventbus.compat import event, eventbus, subscriber


class mysubscriber(subscriber):
    def process(self, eventobj):
        if not isinstance(eventobj, event):
            print('Invalid object type is passed.')
            return
        topic = eventobj.get_topic()
        data = eventobj.get_data()
        print('Processing event with TOPIC: %s, DATA: %s' % (topic, data))


eb = eventbus()
subscr = mysubscriber()
eb.register_consumer(subscr, 'an_important_topic')


eobj1 = event('an_important_topic', 'This is some data for the event 1')
eobj2 = event('an_important_topic', 'This is some data for the event 2')
eobj3 = event('an_important_topic', 'This is some data for the event 3')
eobj4 = event('an_important_topic', 'This is some data for the event 4')

eb.post(eobj1)
eb.post(eobj2)
eb.post(eobj3)
eb.post(eobj4)

eb.shutdown()
sleep(2)
