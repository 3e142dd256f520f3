import pytest
from guidance_helpers import SDES, tiny_model


@pytest.fixture(params=SDES)
def model(request):
    return tiny_model(request.param)
