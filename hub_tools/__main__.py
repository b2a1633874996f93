from hub_tools.cli import main
from hub_tools.distributed import exit_process

exit_process(main())
