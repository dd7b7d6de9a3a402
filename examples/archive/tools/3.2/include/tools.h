/* tools 3.2 */
